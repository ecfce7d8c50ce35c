package httputil

import (
	"context"

	"github.com/sirupsen/logrus"
)

type loggerKey struct{}

// WithLogger stores the request's logger (carrying its request ID) in ctx.
func WithLogger(ctx context.Context, l logrus.FieldLogger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger returns the request's logger, or the standard logger.
func Logger(ctx context.Context) logrus.FieldLogger {
	if l, ok := ctx.Value(loggerKey{}).(logrus.FieldLogger); ok {
		return l
	}
	return logrus.StandardLogger()
}
