package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// leaseRowsText renders the assignment rows for failure messages.
func leaseRowsText(t testing.TB, db *seedDB) string {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT s.ref, COALESCE(a.worker, 0), COALESCE(a.worker_instance::text, ''), a.generation,
	COALESCE(EXTRACT(EPOCH FROM a.lease_expires_at - clock_timestamp()), 0)
FROM sensor_workload_assignment a JOIN sensor_workload w ON w.id = a.workload JOIN sensor s ON s.id = w.sensor ORDER BY s.ref`)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var ref, inst string
		var worker, gen int64
		var left float64
		if err := rows.Scan(&ref, &worker, &inst, &gen, &left); err != nil {
			return "(" + err.Error() + ")"
		}
		fmt.Fprintf(&b, "\n  %s worker=%d instance=%.8s gen=%d expires_in=%s", ref, worker, inst, gen,
			(time.Duration(left * float64(time.Second))).Round(time.Second))
	}
	return b.String()
}

// checkAssignmentRows fails the test for every assignment row whose five
// owner columns are neither all set nor all NULL; ownedGen also requires an
// owned row to have begun a process (generation >= 1).
func checkAssignmentRows(t testing.TB, db *seedDB, ownedGen bool) {
	t.Helper()
	gen := ""
	if ownedGen {
		gen = " AND generation >= 1"
	}
	var bad int
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM sensor_workload_assignment WHERE NOT (
	(worker IS NULL AND worker_instance IS NULL AND lease_expires_at IS NULL AND assigned_at IS NULL AND renewed_at IS NULL)
	OR (worker IS NOT NULL AND worker_instance IS NOT NULL AND lease_expires_at IS NOT NULL AND assigned_at IS NOT NULL
	    AND renewed_at IS NOT NULL`+gen+`))`).Scan(&bad); err != nil {
		t.Errorf("read assignment rows: %v", err)
		return
	}
	if bad != 0 {
		t.Errorf("%d inconsistent assignment rows:%s", bad, leaseRowsText(t, db))
	}
}
