// Package ecr is the functions' narrow adapter over Amazon ECR: read a manifest by digest, ensure a platform repository exists.
package ecr
