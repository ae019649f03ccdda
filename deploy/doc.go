// Package deploy holds migrun's deployment examples (Argo CD, Helm, init
// containers). Its tests parse every manifest strictly as Kubernetes API
// objects and check each migrun variable, flag and subcommand they use
// against cmd/migrun's source, so the examples cannot rot.
//
// It is a module of its own so the Kubernetes API packages the tests need
// stay out of migrun's module and binary.
package deploy
