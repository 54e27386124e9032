package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWithServicesStartsPrivateInstances proves the fallback of `make test`:
// in an empty network namespace (nothing answers on 5432 or 5672) the script
// starts a private PostgreSQL and RabbitMQ from the installed packages, hands
// their URLs to the command, and removes both afterwards.
func TestWithServicesStartsPrivateInstances(t *testing.T) {
	requireServices(t) // needs the packages, not the machine's running services
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is required: %v", err)
	}
	script, _ := filepath.Abs(filepath.Join("scripts", "with-services.sh"))
	probe := `echo "DB=$ATTUNE_TEST_DATABASE_URL"; echo "MQ=$ATTUNE_TEST_AMQP_URL"; ` +
		`psql -X -q -At "$ATTUNE_TEST_DATABASE_URL" -c 'select 42' && $ATTUNE_TEST_RABBITMQCTL -q list_vhosts; ` +
		`echo "TMP=$ATTUNE_TEST_SERVICES_DIR"`
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "bash", "-c",
		`ip link set lo up && exec "$0" bash -c "$1"`, script, probe)
	cmd.Env = os.Environ()
	cmd.Env = append(cmd.Env, "ATTUNE_TEST_DATABASE_URL=", "ATTUNE_TEST_AMQP_URL=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("with-services in an empty network namespace: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"started a private PostgreSQL", "started a private RabbitMQ", "\n42\n", "\n/\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, ":5432/") || strings.Contains(s, ":5672/") {
		t.Errorf("private instances must use free ports, not the standard ones:\n%s", s)
	}
	var dir string
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, "TMP="); ok {
			dir = strings.TrimSpace(v)
		}
	}
	if dir == "" {
		t.Fatalf("the script did not export ATTUNE_TEST_SERVICES_DIR:\n%s", s)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("private service directory %s left behind", dir)
	}
}
