package main

// workloadFence names the lease one sensor process runs under on the newest
// schema generation (CONTRACT §12): the API checks it on every sensor-token
// request and every event, so it travels with the process from acquire to
// release. Generation is bumped by every process start.
type workloadFence struct {
	WorkloadID     int64
	WorkerID       int64
	WorkerInstance string // uuid v4, one per agent process, the worker JWT's metadata.worker_instance
	Generation     int64
}
