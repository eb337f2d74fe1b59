{{/* Labels on every object. */}}
{{- define "slimgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "slimgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slimgate
{{- end }}

{{/* Labels that select the webhook Pods. */}}
{{- define "slimgate.selectorLabels" -}}
app.kubernetes.io/name: slimgate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The webhook image reference. */}}
{{- define "slimgate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* Name of the ServiceAccount. */}}
{{- define "slimgate.serviceAccountName" -}}
{{ required "serviceAccount.name is required" .Values.serviceAccount.name }}
{{- end }}

{{/* Fixed object names, shared with the webhook's flags. */}}
{{- define "slimgate.serviceName" -}}slimgate-webhook{{- end }}
{{- define "slimgate.webhookConfigName" -}}slimgate{{- end }}
{{- define "slimgate.certificateName" -}}slimgate-serving-cert{{- end }}
{{- define "slimgate.certSecretName" -}}
{{- if .Values.certManager.enabled -}}slimgate-webhook-tls{{- else -}}{{ required "certRotation.secretName is required" .Values.certRotation.secretName }}{{- end -}}
{{- end }}

{{/* The namespaceSelector of both webhooks: the user's, plus the
namespaces slimgate never judges. */}}
{{- define "slimgate.namespaceSelector" -}}
{{- $sel := deepCopy (.Values.webhook.namespaceSelector | default dict) -}}
{{- $excluded := list "kube-system" "kube-node-lease" "kube-public" .Release.Namespace | uniq -}}
{{- $always := dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $excluded -}}
{{- $_ := set $sel "matchExpressions" (prepend ($sel.matchExpressions | default list) $always) -}}
{{- toYaml $sel -}}
{{- end }}

{{/* Checks of values that the schema of the objects would not catch. */}}
{{- define "slimgate.validate" -}}
{{- if not (has .Values.policy.scope (list "cluster" "opt-in")) -}}
{{- fail (printf "policy.scope must be cluster or opt-in, not %q" .Values.policy.scope) -}}
{{- end -}}
{{- if not (has .Values.policy.mode (list "Enforce" "Warn" "Audit")) -}}
{{- fail (printf "policy.mode must be Enforce, Warn or Audit, not %q" .Values.policy.mode) -}}
{{- end -}}
{{- if not (has .Values.webhook.failurePolicy (list "Ignore" "Fail")) -}}
{{- fail (printf "webhook.failurePolicy must be Ignore or Fail, not %q" .Values.webhook.failurePolicy) -}}
{{- end -}}
{{- $t := int .Values.webhook.timeoutSeconds -}}
{{- if or (lt $t 1) (gt $t 30) -}}
{{- fail "webhook.timeoutSeconds must be between 1 and 30" -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (include "slimgate.isSet" $pdb.minAvailable) (include "slimgate.isSet" $pdb.maxUnavailable) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- end }}

{{/* Non-empty when a value is set: neither null nor "". */}}
{{- define "slimgate.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") -}}true{{- end -}}
{{- end }}
