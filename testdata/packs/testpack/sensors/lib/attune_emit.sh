# Sourced by shell_sensor.sh and native_sensor (bash): emits one event per
# rule of ATTUNE_SENSOR_TRIGGERS over /dev/tcp (no curl needed), then idles
# until SIGTERM. Only http:// API URLs are supported.

# Exit 0 on SIGTERM from the very start, not only once idle.
trap 'exit 0' TERM

attune_post_event() { # $1 = JSON body
	local LC_ALL=C body=$1 url=${ATTUNE_API_URL%/} status
	case $url in
	http://*) url=${url#http://} ;;
	*) echo "attune_emit: only http:// API URLs are supported" >&2; return 1 ;;
	esac
	local hostport=${url%%/*} path=
	[ "$hostport" != "$url" ] && path=/${url#*/}
	local host=${hostport%:*} port=80
	[ "$host" != "$hostport" ] && port=${hostport##*:}
	exec 3<>"/dev/tcp/$host/$port" || return 1
	printf 'POST %s/api/v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$path" "$hostport" "$ATTUNE_API_TOKEN" "${#body}" "$body" >&3
	read -r _ status _ <&3
	exec 3<&- 3>&-
	[ "$status" = 201 ]
}

attune_emit_rules() { # $1 = language label for the payload
	# Relies on the agent's canonical key order: config, id, ref, trigger_ref.
	local rest=$ATTUNE_SENSOR_TRIGGERS body
	local re='"id":([0-9]+),"ref":"([^"]*)","trigger_ref":"([^"]*)"'
	while [[ $rest =~ $re ]]; do
		rest=${rest#*"${BASH_REMATCH[0]}"}
		body=$(printf '{"trigger_ref":"%s","payload":{"sensor":"%s","rule_ref":"%s","language":"%s"},"trigger_instance_id":"rule_%s"}' \
			"${BASH_REMATCH[3]}" "$ATTUNE_SENSOR_REF" "${BASH_REMATCH[2]}" "$1" "${BASH_REMATCH[1]}")
		attune_post_event "$body" || { echo "attune_emit: event for rule ${BASH_REMATCH[2]} not accepted" >&2; exit 1; }
	done
}

attune_idle() {
	while :; do
		sleep 1 &
		wait $!
	done
}
