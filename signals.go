package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// hardStopKey carries, in a context, the channel closed by a second signal.
type hardStopKey struct{}

// shutdownSignals returns a context cancelled by the first SIGINT or SIGTERM
// and carrying a channel closed by the second one. Unlike signal.NotifyContext
// it keeps listening after the first signal: the default action of a second
// SIGTERM would kill the agent and orphan its sensors, so the agent must catch
// it and SIGKILL every sensor group itself.
func shutdownSignals(parent context.Context) (context.Context, context.CancelFunc) {
	hard := make(chan struct{})
	ctx, cancel := context.WithCancel(context.WithValue(parent, hardStopKey{}, (<-chan struct{})(hard)))
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			close(hard)
		case <-done:
		}
	}()
	stopped := false
	return ctx, func() {
		if !stopped {
			stopped = true
			signal.Stop(sigs)
			close(done)
			cancel()
		}
	}
}

// withHardStop returns ctx carrying hard as its second-signal channel (tests).
func withHardStop(ctx context.Context, hard <-chan struct{}) context.Context {
	return context.WithValue(ctx, hardStopKey{}, hard)
}

// hardStop returns the second-signal channel of ctx; nil (never ready) when none.
func hardStop(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(hardStopKey{}).(<-chan struct{})
	return ch
}
