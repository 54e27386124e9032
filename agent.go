package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// runDetectOnly prints the runtime detection report and the shared
// environment diagnostic: no database or broker is touched, and the
// configuration is read only when one is named (CONTRACT §1). It exits 0
// whatever it finds, 1 when a named config or its passthrough is invalid.
func runDetectOnly(ctx context.Context, opts cliOptions, stdout, stderr io.Writer) int {
	wd, _ := os.Getwd() // only resolves a relative config path; "" is the process's own directory
	dc, err := loadDetectOnlyConfig(os.Environ(), wd)
	if err != nil {
		fmt.Fprintln(stderr, "attune-sensor-agent:", err)
		return exitFailure
	}
	detected := detectInterpreters(ctx, realProbeSys, baselineEnv(os.Environ(), dc.Passthrough), defaultProbeTimeout)
	envs := diagnoseRuntimeEnvs(dc.RuntimeEnvsDir, detected)
	override, overrideSet := os.LookupEnv(runtimesOverrideEnv)
	if opts.json {
		var ov *string
		if overrideSet {
			ov = &override
		}
		err = writeDetectJSON(stdout, detected, ov, envs)
	} else {
		err = writeDetectReport(stdout, detected, overrideSet, envs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "attune-sensor-agent: write detection report:", err)
		return exitFailure
	}
	return exitOK
}

// runAgent loads the configuration, detects runtimes, connects to the
// database and runs the Service until ctx ends, logging to logw (stdout, as
// the reference does). Every returned error is mapped to an exit code by
// exitCode.
func runAgent(ctx context.Context, opts cliOptions, logw io.Writer) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	cfg, err := loadConfig(os.Environ(), wd, opts.name)
	if err != nil {
		return err
	}
	log := newLogger(logw, cfg.Log, os.Getenv("RUST_LOG"))
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "problem", w)
	}
	log.Info("Attune Sensor Agent starting", "version", version, "worker", cfg.Sensor.WorkerName,
		"database", redactURL(cfg.Database.URL), "broker", redactURL(cfg.MQURL), "api", redactURL(cfg.APIURL))
	log.Debug("memory tuning", memTuningApplied.logAttrs()...)

	detected := detectInterpreters(ctx, realProbeSys, baselineEnv(os.Environ(), cfg.Sensor.PassthroughEnv), defaultProbeTimeout)
	override, overrideSet := os.LookupEnv(runtimesOverrideEnv)
	sel := selectRuntimes(detected, override, overrideSet)
	if sel.SetEnv {
		os.Setenv(runtimesOverrideEnv, sel.EnvValue)
	}
	caps := newCapabilityInput(cfg.Sensor, sel.Selected, sel.OverrideNames, os.Getenv, semanticVersion(version))
	for _, p := range capabilityProblems(caps) {
		log.Warn("capabilities", "problem", p.Error())
	}

	pool, err := openPool(ctx, cfg.Database, log)
	if err != nil {
		return err
	}
	defer closePool(pool, dbCloseTimeout) // bounded: a stalled database must not hold the exit
	if len(sel.Selected) == 0 {           // CONTRACT §4: the reference's non-agent path
		var rows []runtimeRow
		if fallbackNeedsDatabase(overrideSet, cfg.Sensor.Capabilities) {
			if rows, err = loadRuntimeRows(ctx, pool); err != nil {
				return err
			}
		}
		fb := decideCapabilityFallback(ctx, override, overrideSet, cfg.Sensor.Capabilities, rows,
			commandRuntimeVerifier(baselineEnv(os.Environ(), cfg.Sensor.PassthroughEnv), defaultProbeTimeout))
		caps.Fallback = &fb
		log.Info("no runtime selected at bootstrap; capabilities from the fallback path", "source", fb.Source, "runtimes", fb.Runtimes)
	}
	capsObj := buildCapabilities(caps)
	runtimes, _ := capsObj["runtimes"].([]string)
	log.Info("runtimes detected", "detected", runtimeNamesCSV(detected), "advertised", runtimes)
	logUnusableRuntimeEnvs(log, cfg.RuntimeEnvsDir, detected)
	schema, err := detectSchema(ctx, pool)
	if err != nil {
		return fmt.Errorf("inspect database schema: %w", err)
	}
	log.Info("database schema", "generation", schema.generation())

	runner, err := newProcRunner(log)
	if err != nil {
		return fmt.Errorf("process runner: %w", err)
	}
	tokens, signer, err := newTokenClient(cfg)
	if err != nil {
		return err
	}
	placement := placementFromCapabilities(buildCapabilities(caps))
	var workerID atomic.Int64
	identity := func() (int64, string) { return workerID.Load(), signer.instanceID() }
	status := newStatusWriter(cfg, log)
	prompts := &amqpPrompts{URL: cfg.MQURL, Log: log}
	recorder := newSensorEvents(pool, schema, cfg.Sensor.WorkerName, cfg.ArtifactsDir, prompts, log)
	starts := newStartGate(recorder)
	outputs := sensorOutputsFor(cfg, schema, &pgLogRows{pool: pool, schema: schema}, signer, log)
	svc := &Service{
		Config:    cfg,
		Log:       log,
		Placement: placement,
		Workers:   newPgRegistry(pool),
		Caps:      caps,
		Sensors:   &pgSensorSource{pool: pool, schema: schema, log: log, identity: identity},
		Prompts:   prompts,
		Manager: newSensorManager(&sensorLauncher{cfg: cfg, runner: runner, tokens: tokens, log: log,
			releases: newPackReleases(cfg, log), jwt: signer, advertised: advertisedRuntimeVersions(capsObj)},
			starts, outputs, log,
			cfg.Sensor.MaxConcurrentSensors, stopGrace),
		Starts:     starts,
		OnWorkerID: func(id int64) { workerID.Store(id); signer.setWorkerID(id); recorder.setWorkerID(id) },
		OnBeat:     status.beat,
		OnStop:     status.remove,
	}
	if schema.leases() {
		svc.Leases = newAgentLeases(&pgLeases{pool: pool, schema: schema, timing: defaultLeaseTiming(),
			placement: placement, identity: identity}, log)
		svc.Manager.leases = svc.Leases
	}
	// PackDeleted is handled in the consumer, before its ack (packpurge.go).
	prompts.OnPackDeleted = newPackPurger(cfg, pgPackLookup{pool}, svc.Manager, stopGrace+packPurgeStopSlack, log).handle
	err = svc.Run(ctx)
	// What is still in flight at exit, drained side by side so a stalled
	// database or API costs the longest bound, not their sum: the final
	// sensor_process rows, lease releases, seals of runs that just ended.
	var drain sync.WaitGroup
	drain.Go(func() { recorder.close(processCloseTimeout) })
	if svc.Leases != nil {
		drain.Go(func() { svc.Leases.wait(releaseTimeout + time.Second) })
	}
	if so, ok := outputs.(*streamOutputs); ok {
		drain.Go(func() { so.wait(outputSealWait) })
	}
	drain.Wait()
	if !closePool(pool, dbCloseTimeout) {
		log.Warn("database connections still closing at exit", "waited", dbCloseTimeout.String())
	}
	log.Info("Attune Sensor Agent shutdown complete")
	return err
}
