package kafka

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger routes franz-go's client logs to slog. franz-go logs every
// connection and metadata refresh at info, which drowns a component's own
// lines, so its info becomes slog's debug.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case k.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case k.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	k.l.Log(context.Background(), slogLevel(int(level), int(kgo.LogLevelError), int(kgo.LogLevelWarn)), msg, keyvals...)
}

// kfakeLogger routes the embedded broker's logs to slog, with the same
// demotion of info to debug.
type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl := slogLevel(int(level), int(kfake.LogLevelError), int(kfake.LogLevelWarn))
	if !k.l.Enabled(context.Background(), lvl) {
		return
	}
	k.l.Log(context.Background(), lvl, fmt.Sprintf(format, args...))
}

func slogLevel(level, errLevel, warnLevel int) slog.Level {
	switch level {
	case errLevel:
		return slog.LevelError
	case warnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}
