// Package deps pins the modules the project is being built with while its packages are
// written in parallel, so that `go mod tidy` keeps them. Remove once every one is imported.
package deps

import (
	_ "github.com/IBM/sarama"
	_ "github.com/expr-lang/expr"
	_ "github.com/go-mysql-org/go-mysql/canal"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.uber.org/zap"
)
