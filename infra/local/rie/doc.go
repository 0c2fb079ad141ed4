// Package rie runs the project's real Lambda binaries locally under the AWS
// Lambda Runtime Interface Emulator (github.com/aws/aws-lambda-runtime-interface-emulator),
// the local stand-in for `sam local invoke` (SPEC section 3).
//
// Build compiles a function's bootstrap for the host with the same flags as
// the SAM build; FindRIE locates the emulator the Makefile installs into the
// repository's bin folder; Start runs one emulator instance on two free
// loopback ports with the function's environment, Invoke posts one event to
// it and Close stops it and every process it started.
//
// Emulator facts this package is built around (checked against
// aws-lambda-rie v0.0.0-20261030222936-bef5c4ba774d): it binds 0.0.0.0:8080
// unless told otherwise, so both --runtime-interface-emulator-address and
// --runtime-api-address are always given on 127.0.0.1; flags it does not know
// are taken as the bootstrap path, so none are passed; it runs the function's
// init lazily on the first invoke and forwards its own environment to the
// bootstrap; one instance fails on concurrent invokes, so Invoke serialises;
// it does not set AWS_REGION, so callers put it in Options.Env. The emulator
// and this package's process handling are for Linux (and other Unix systems,
// without the /proc-based clean-up of stray processes).
package rie
