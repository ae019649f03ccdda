// Package deploy holds migrun's deployment examples (Argo CD with
// Kustomize, Helm, init containers) and the tests of its release recipe.
// The tests parse every manifest strictly as Kubernetes API objects, check
// each migrun variable, flag and subcommand they use against `migrun help
// --json`, check what makes them work on a first sync (prerequisites
// before hook Jobs, Jobs that can complete beside sidecars, the revision in
// step with the image), and run helm and kustomize on them; they also run
// `make release` and check the binaries, and check the Dockerfile and the
// GitHub workflow, so none of it can rot.
//
// It is a module of its own so the Kubernetes API packages the tests need
// stay out of migrun's module and binary.
package deploy
