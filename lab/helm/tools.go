//go:build tools

// Package tools makes `go mod tidy` keep the helm command that build.sh builds.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
