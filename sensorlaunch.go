package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// insecureDefaultJWTSecret is what the reference signs worker JWTs with when
// authentication is disabled and no secret is configured; an auth-disabled
// Attune API accepts it, so the agent does the same.
const insecureDefaultJWTSecret = "insecure_default_secret_change_in_production"

// sensorLauncher is the real launcher (sensorlaunch.go owns one sensor
// start: resolve, prepare, token, start; see launch).
type sensorLauncher struct {
	cfg    *Config
	runner *procRunner
	tokens *sensorTokenClient
	log    *slog.Logger
	// advertised are the runtime versions this worker advertises
	// (advertisedRuntimeVersions of its capabilities); they pick the
	// runtime_version row (selectRuntimeVersion).
	advertised map[string][]string
	// releases makes a pinned pack release local (newest generation); jwt
	// is the worker JWT it downloads with.
	releases *packReleases
	jwt      workerJWTSource
}

var _ launcher = (*sensorLauncher)(nil)

// settings are the launch settings derived from the configuration. The
// environment is read at each launch so ATTUNE_SENSOR_RUNTIMES and friends
// set at start-up are current.
func (l *sensorLauncher) settings() launchSettings {
	return launchSettings{
		PacksBaseDir:            l.cfg.PacksBaseDir,
		RuntimeEnvsDir:          l.cfg.RuntimeEnvsDir,
		ArtifactsDir:            l.cfg.ArtifactsDir,
		APIURL:                  l.cfg.APIURL,
		NotifierWSURL:           l.cfg.NotifierWSURL,
		LogLevel:                l.cfg.Log.Level,
		LogFormat:               l.cfg.Log.Format,
		AllowInsecureNotifierWS: l.cfg.Sensor.AllowInsecureNotifierWS,
		Passthrough:             l.cfg.Sensor.PassthroughEnv,
		Environ:                 os.Environ(),
		AdvertisedVersions:      l.advertised,
	}
}

// launch starts spec once, as one straight pipeline:
//
//  1. resolve: decide from the spec alone (under a lease, the workload's
//     snapshot): pack directory, entrypoint, runtime version, execution
//     config, environment directory. Nothing on disk is touched.
//  2. prepare: make the pinned release local (verified or downloaded), then
//     locate the script, build or reuse the runtime environment and pick the
//     interpreter inside it.
//  3. token: ask the API for the sensor token, fenced by the lease.
//  4. start: the process group with the child environment and the token.
//
// Errors name the sensor; nothing is executed when a step refuses.
func (l *sensorLauncher) launch(ctx context.Context, spec sensorSpec, stdout, stderr io.Writer) (launched, error) {
	set := l.settings()
	plan, err := resolveLaunch(spec, set)
	if err != nil {
		return launched{}, err
	}
	if err := l.prepare(ctx, &plan, set); err != nil {
		return launched{}, err
	}
	tok, err := l.token(ctx, plan)
	if err != nil {
		return launched{}, err
	}
	return l.start(ctx, plan, set, tok, stdout, stderr)
}

// prepare is step 2: the release on disk, then everything prepareOnDisk does.
func (l *sensorLauncher) prepare(ctx context.Context, plan *launchPlan, set launchSettings) error {
	if rel := plan.spec.Release; rel != nil && l.releases != nil {
		var fence workloadFence
		if plan.spec.Fence != nil {
			fence = *plan.spec.Fence
		}
		dir, err := l.releases.ensureLocal(ctx, plan.spec.PackRef, *rel, fence, l.jwt)
		if err != nil {
			return fmt.Errorf("sensor %s: %w", plan.spec.Ref, err)
		}
		plan.PackDir = dir
	}
	if err := prepareOnDisk(ctx, l.runner, plan, set); err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		l.log.Warn("sensor launch", "sensor", plan.spec.Ref, "problem", w)
	}
	if err := checkExecEnvSize(plan.Env); err != nil {
		return fmt.Errorf("sensor %s: %w", plan.spec.Ref, err)
	}
	return nil
}

// token is step 3: the sensor token, scoped to the sensor's triggers and,
// under a lease, fenced by it (the answer's workload_fence is checked).
func (l *sensorLauncher) token(ctx context.Context, plan launchPlan) (sensorToken, error) {
	req, err := newSensorTokenRequest(plan.spec)
	if err != nil {
		return sensorToken{}, fmt.Errorf("sensor %s token request: %w", plan.spec.Ref, err)
	}
	return l.tokens.issue(ctx, req)
}

// start is step 4: the process group, with the token in its environment.
func (l *sensorLauncher) start(ctx context.Context, plan launchPlan, set launchSettings, tok sensorToken, stdout, stderr io.Writer) (launched, error) {
	env, _ := sensorEnv(plan.spec, plan, set, tok.Token) // its warnings are plan.Warnings, logged by prepare
	p, err := l.runner.start(ctx, procSpec{Ref: plan.spec.Ref, Path: plan.Path, Args: plan.Args, Env: env,
		Stdout: stdout, Stderr: stderr})
	if err != nil {
		return launched{}, fmt.Errorf("start sensor %s: %w", plan.spec.Ref, err)
	}
	return launched{proc: p, rotateAfter: tokenRotationDelay(tok.IssuedAt, tok.ExpiresAt)}, nil
}

// newTokenClient builds the sensor-token client from the configuration.
func newTokenClient(cfg *Config) (*sensorTokenClient, *workerJWTSigner, error) {
	secret := cfg.Security.JWTSecret
	if secret == "" && !cfg.Security.EnableAuth {
		secret = insecureDefaultJWTSecret
	}
	signer, err := newWorkerJWTSigner(secret)
	if err != nil {
		return nil, nil, fmt.Errorf("worker JWT: %w", err)
	}
	return newSensorTokenClient(cfg.APIURL, signer), signer, nil
}

// maxExecStringBytes is Linux's MAX_ARG_STRLEN (32 pages of 4 KiB): execve
// refuses any single argument or environment string longer than this,
// terminating NUL included, with E2BIG.
const maxExecStringBytes = 32 * 4096

// ErrSensorEnvTooLarge refuses a sensor whose environment cannot be passed
// to execve, typically ATTUNE_SENSOR_TRIGGERS carrying megabytes of rule
// trigger_params.
var ErrSensorEnvTooLarge = errors.New("sensor environment variable too large for execve")

// checkExecEnvSize names the variable that would make execve fail. Without
// it the only trace is "argument list too long", which points at the
// command line and not at the rule whose parameters grew too big; and it
// saves requesting a sensor token for a start that cannot succeed.
func checkExecEnvSize(env []string) error {
	for _, kv := range env {
		if len(kv)+1 > maxExecStringBytes {
			name, _, _ := strings.Cut(kv, "=")
			return fmt.Errorf("%w: %s is %d bytes, Linux passes at most %d per variable (MAX_ARG_STRLEN); shrink the rule trigger_params or sensor config",
				ErrSensorEnvTooLarge, name, len(kv), maxExecStringBytes-1)
		}
	}
	return nil
}
