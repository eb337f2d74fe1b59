// Package fleet judges the workloads that already run in a cluster, as
// the admission webhook would judge their creation, and sums up what
// each policy finds. It holds no client and starts nothing: a Lister
// reads namespaces and objects, a Judge (*admission.Handler) judges
// images, and the caller decides where the results go (the webhook's
// background scan writes Reports, policy status and metrics).
//
// The steps, each usable alone:
//
//   - Group folds the objects of a namespace into workloads: a
//     Deployment with its ReplicaSets and their Pods, a CronJob with its
//     Jobs and theirs, a Pod no judged controller made on its own.
//   - Targets lists the images of a workload to judge: the digest each
//     Pod runs (status imageID, init and ephemeral containers too) where
//     a Pod reports one, the spec's reference otherwise, saying which.
//   - Scanner.Scan judges every workload of the namespaces under the
//     policies that select each; Summarise sums the results per policy
//     and namespace.
//
// A command-line scan builds the same pieces on the caller's client:
//
//	c, _ := client.New(cfg, client.Options{Scheme: scheme}) // core, apps, batch, slimgate.dev
//	remote, _ := registry.NewRemote(registry.Options{})
//	h, _ := admission.NewHandler(admission.Options{Reader: c, Inspector: remote})
//	s := fleet.Scanner{Lister: fleet.ReaderLister{Reader: c}, Judge: h}
//	scanned, err := s.Scan(ctx, []string{"shop"}) // nil: every namespace
//	for _, sum := range fleet.Summarise(scanned.Workloads) { ... }
//
// The handler reads the policies with the Reader's List, and each
// namespace's labels with its Get: to scan under policies from a file,
// give it a Reader that lists those (with a UID and resourceVersion set,
// so that each is compiled once) and gets namespaces from the cluster.
// admission.Options.Keychain adds the pull secrets the caller may read.
package fleet
