# Fixture sensor run by /bin/bash: one event per rule, then idle until SIGTERM.
. "$(dirname "$0")/lib/attune_emit.sh"
attune_emit_rules shell
echo "shell sensor ready"
attune_idle
