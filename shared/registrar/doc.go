// Package registrar turns ECR push events for platform repositories into
// registrations against the open publish intent for the pushed tag.
package registrar
