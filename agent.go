package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// runDetectOnly prints the runtime detection report: no config, database or
// broker is touched, and it exits 0 whatever it finds (CONTRACT §1).
func runDetectOnly(ctx context.Context, opts cliOptions, stdout, stderr io.Writer) int {
	detected := detectInterpreters(ctx, realProbeSys, baselineEnv(os.Environ(), nil), defaultProbeTimeout)
	override, overrideSet := os.LookupEnv(runtimesOverrideEnv)
	var err error
	if opts.json {
		var ov *string
		if overrideSet {
			ov = &override
		}
		err = writeDetectJSON(stdout, detected, ov)
	} else {
		err = writeDetectReport(stdout, detected, overrideSet)
	}
	if err != nil {
		fmt.Fprintln(stderr, "attune-sensor-agent: write detection report:", err)
		return exitFailure
	}
	return exitOK
}

// runAgent loads the configuration, detects runtimes, connects to the
// database and runs the Service until ctx ends. Every returned error is
// mapped to an exit code by exitCode.
func runAgent(ctx context.Context, opts cliOptions, stderr io.Writer) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	cfg, err := loadConfig(os.Environ(), wd, opts.name)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log, os.Getenv("RUST_LOG"))
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
	caps := newCapabilityInput(cfg.Sensor, sel.Selected, sel.OverrideNames, os.Getenv, version)
	for _, p := range capabilityProblems(caps) {
		log.Warn("capabilities", "problem", p.Error())
	}
	runtimes, _ := buildCapabilities(caps)["runtimes"].([]string)
	log.Info("runtimes detected", "detected", runtimeNamesCSV(detected), "advertised", runtimes)

	pool, err := openPool(ctx, cfg.Database, log)
	if err != nil {
		return err
	}
	defer closePool(pool, dbCloseTimeout) // bounded: a stalled database must not hold the exit
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
	status := newStatusWriter(cfg, log)
	prompts := &amqpPrompts{URL: cfg.MQURL, Log: log}
	recorder := newSensorEvents(pool, schema, cfg.Sensor.WorkerName, prompts, log)
	svc := &Service{
		Config:    cfg,
		Log:       log,
		Placement: workerPlacement{Runtimes: runtimes, Labels: cfg.Sensor.Labels},
		Workers:   newPgRegistry(pool),
		Caps:      caps,
		Sensors:   &pgSensorSource{pool: pool, schema: schema, log: log},
		Prompts:   prompts,
		Manager: newSensorManager(&sensorLauncher{cfg: cfg, runner: runner, tokens: tokens, log: log},
			recorder, rotatingSensorLogs(cfg, log), log,
			cfg.Sensor.MaxConcurrentSensors, stopGrace),
		OnWorkerID: func(id int64) { signer.setWorkerID(id); recorder.setWorkerID(id) },
		OnBeat:     status.beat,
		OnStop:     status.remove,
	}
	err = svc.Run(ctx)
	if !closePool(pool, dbCloseTimeout) {
		log.Warn("database connections still closing at exit", "waited", dbCloseTimeout.String())
	}
	log.Info("Attune Sensor Agent shutdown complete")
	return err
}
