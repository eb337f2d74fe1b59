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

{{/* The ServiceAccount's annotations: serviceAccount.annotations and the
cloud identities of registryAuth (IRSA, GKE Workload Identity, Azure
workload identity). Empty when there are none. */}}
{{- define "slimgate.serviceAccountAnnotations" -}}
{{- $a := deepCopy (.Values.serviceAccount.annotations | default dict) -}}
{{- $ra := .Values.registryAuth -}}
{{- with $ra.awsRoleArn }}{{ $_ := set $a "eks.amazonaws.com/role-arn" . }}{{ end -}}
{{- with $ra.gcpServiceAccount }}{{ $_ := set $a "iam.gke.io/gcp-service-account" . }}{{ end -}}
{{- with $ra.azureClientId }}{{ $_ := set $a "azure.workload.identity/client-id" . }}{{ end -}}
{{- if $a }}{{ toYaml $a }}{{ end -}}
{{- end }}

{{/* Fixed object names, shared with the webhook's flags. */}}
{{- define "slimgate.serviceName" -}}slimgate-webhook{{- end }}
{{- define "slimgate.webhookConfigName" -}}slimgate{{- end }}
{{- define "slimgate.certificateName" -}}slimgate-serving-cert{{- end }}
{{- define "slimgate.certSecretName" -}}
{{- if .Values.certManager.enabled -}}slimgate-webhook-tls{{- else -}}{{ required "certRotation.secretName is required" .Values.certRotation.secretName }}{{- end -}}
{{- end }}

{{/* Where the callers' CA bundle is, inside the certificate folder
(--client-ca-name): a folder of its own, so that it can be mounted inside
the folder the webhook writes its own certificates to. */}}
{{- define "slimgate.clientCADir" -}}client-ca{{- end }}
{{- define "slimgate.clientCAName" -}}{{ include "slimgate.clientCADir" . }}/ca.crt{{- end }}

{{/* The projected volume source (a list item) of the callers' CA bundle:
the key caKey of the Secret or ConfigMap named, at slimgate.clientCAName in
cert-manager's folder, at ca.crt in a volume of its own. */}}
{{- define "slimgate.clientCASource" -}}
{{- $ca := .Values.webhook.clientAuth -}}
{{- $path := "ca.crt" -}}
{{- if .Values.certManager.enabled -}}{{- $path = include "slimgate.clientCAName" . -}}{{- end -}}
- {{ if $ca.caSecret }}secret{{ else }}configMap{{ end }}:
    name: {{ $ca.caSecret | default $ca.caConfigMap }}
    items:
    - key: {{ $ca.caKey }}
      path: {{ $path }}
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

{{/* The namespaces the preview webhooks see: all but those the judging
webhooks always exclude (a namespace previews the labels that would opt
it in, whatever webhook.namespaceSelector says). */}}
{{- define "slimgate.previewNamespaceSelector" -}}
{{- $excluded := list "kube-system" "kube-node-lease" "kube-public" .Release.Namespace | uniq -}}
{{- toYaml (dict "matchExpressions" (list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $excluded))) -}}
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
{{- $ca := .Values.webhook.clientAuth -}}
{{- if $ca.enabled -}}
{{- if eq (include "slimgate.isSet" $ca.caSecret) (include "slimgate.isSet" $ca.caConfigMap) -}}
{{- fail "webhook.clientAuth: set one of caSecret and caConfigMap (the CA that signs the API server's client certificate)" -}}
{{- end -}}
{{- if not (include "slimgate.isSet" $ca.caKey) -}}
{{- fail "webhook.clientAuth.caKey is required" -}}
{{- end -}}
{{- end -}}
{{- $ra := .Values.registryAuth -}}
{{- range $key, $provider := dict "awsRoleArn" "ecr" "gcpServiceAccount" "gcr" "azureClientId" "acr" -}}
{{- if and (get $ra $key) (not (has $provider $ra.providers)) -}}
{{- fail (printf "registryAuth.%s is set but registryAuth.providers does not list %s" $key $provider) -}}
{{- end -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (include "slimgate.isSet" $pdb.minAvailable) (include "slimgate.isSet" $pdb.maxUnavailable) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- if and $pdb.enabled (gt (int .Values.replicaCount) 1) (include "slimgate.blocksDrains" .) -}}
{{- fail (printf "podDisruptionBudget allows no eviction of the %d replicas: it would hold every node drain; raise replicaCount, lower the budget or set podDisruptionBudget.enabled=false" (int .Values.replicaCount)) -}}
{{- end -}}
{{- end }}

{{/* Non-empty when the disruption budget leaves no replica to evict:
maxUnavailable 0, or minAvailable (a percentage rounds up, as the
disruption controller rounds it) as many as the replicas. */}}
{{- define "slimgate.blocksDrains" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- $n := int .Values.replicaCount -}}
{{- if include "slimgate.isSet" $pdb.maxUnavailable -}}
{{- if eq (int (trimSuffix "%" (toString $pdb.maxUnavailable))) 0 -}}true{{- end -}}
{{- else if include "slimgate.isSet" $pdb.minAvailable -}}
{{- $min := toString $pdb.minAvailable -}}
{{- $need := int $min -}}
{{- if hasSuffix "%" $min -}}
{{- $need = div (add (mul $n (int (trimSuffix "%" $min))) 99) 100 -}}
{{- end -}}
{{- if ge (int $need) $n -}}true{{- end -}}
{{- end -}}
{{- end }}

{{/* Non-empty when a value is set: neither null nor "". */}}
{{- define "slimgate.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") -}}true{{- end -}}
{{- end }}
