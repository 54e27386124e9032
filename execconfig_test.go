package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// pythonExecConfig mirrors the reference's bundled core.python runtime.
const pythonExecConfig = `{
  "interpreter": {"binary": "python3", "args": ["-u"], "file_extension": ".py"},
  "environment": {"env_type": "virtualenv", "dir_name": ".venv",
    "create_command": ["python3", "-m", "venv", "--copies", "{env_dir}"],
    "interpreter_path": "{env_dir}/bin/python3"},
  "dependencies": {"manifest_file": "requirements.txt",
    "install_command": ["{interpreter}", "-m", "pip", "install", "-r", "{manifest_path}"]},
  "env_vars": {"PYTHONPATH": {"operation": "prepend", "value": "{pack_dir}/lib", "separator": ":"}}
}`

func TestParseExecConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    execConfig
		wantErr string // substring naming the field; "" = no error
	}{
		{name: "NULL column is the native default", raw: "", want: execConfig{}},
		{name: "JSON null is the native default", raw: "null", want: execConfig{}},
		{name: "empty object", raw: "{}", want: execConfig{}},
		{
			name: "reference python runtime",
			raw:  pythonExecConfig,
			want: execConfig{
				Interpreter: interpreterConfig{Binary: "python3", Args: []string{"-u"}, FileExtension: ".py"},
				Environment: &environmentConfig{EnvType: "virtualenv", DirName: ".venv",
					CreateCommand: []string{"python3", "-m", "venv", "--copies", "{env_dir}"}, InterpreterPath: "{env_dir}/bin/python3"},
				Dependencies: &dependencyConfig{ManifestFile: "requirements.txt",
					InstallCommand: []string{"{interpreter}", "-m", "pip", "install", "-r", "{manifest_path}"}},
				EnvVars: []runtimeEnvVar{{Name: "PYTHONPATH", Value: "{pack_dir}/lib", Operation: "prepend", Separator: ":"}},
			},
		},
		{
			name: "env_vars string form, defaults, sorted, unknown keys and nulls ignored",
			raw: `{"interpreter": {"binary": "node", "args": null, "extra": 1}, "environment": null, "inline_execution": {"strategy": "direct"},
			       "env_vars": {"ZED": "z", "A": {"value": "{env_dir}/x", "operation": "append"}, "B": {"value": "b", "separator": null}}}`,
			want: execConfig{
				Interpreter: interpreterConfig{Binary: "node"},
				EnvVars: []runtimeEnvVar{
					{Name: "A", Value: "{env_dir}/x", Operation: "append", Separator: ":"},
					{Name: "B", Value: "b", Operation: "set", Separator: ":"},
					{Name: "ZED", Value: "z", Operation: "set", Separator: ":"},
				},
			},
		},
		{name: "environment dir_name defaults to .venv", raw: `{"environment": {"env_type": "none"}}`,
			want: execConfig{Environment: &environmentConfig{EnvType: "none", DirName: ".venv"}}},
		{name: "not JSON", raw: `{"interpreter":`, wantErr: "not valid JSON"},
		{name: "top level is an array", raw: `[]`, wantErr: "want an object, got an array"},
		{name: "interpreter is a string", raw: `{"interpreter": "python3"}`, wantErr: `field "interpreter": want an object, got a string`},
		{name: "binary is a number", raw: `{"interpreter": {"binary": 3}}`, wantErr: `field "interpreter.binary": want a string, got a number`},
		{name: "args is a string", raw: `{"interpreter": {"binary": "x", "args": "-u"}}`, wantErr: `field "interpreter.args": want an array of strings, got a string`},
		{name: "args holds a number", raw: `{"interpreter": {"binary": "x", "args": ["-u", 2]}}`, wantErr: `field "interpreter.args[1]": want a string, got a number`},
		{name: "env_type missing", raw: `{"environment": {"create_command": ["x"]}}`, wantErr: `field "environment.env_type": is required`},
		{name: "create_command is an object", raw: `{"environment": {"env_type": "v", "create_command": {}}}`, wantErr: `field "environment.create_command": want an array of strings, got an object`},
		{name: "interpreter_path is a bool", raw: `{"environment": {"env_type": "v", "interpreter_path": true}}`, wantErr: `field "environment.interpreter_path": want a string, got a boolean`},
		{name: "manifest_file missing", raw: `{"dependencies": {"install_command": ["x"]}}`, wantErr: `field "dependencies.manifest_file": is required`},
		{name: "env_vars is an array", raw: `{"env_vars": ["A=b"]}`, wantErr: `field "env_vars": want an object, got an array`},
		{name: "env var is a number", raw: `{"env_vars": {"N": 1}}`, wantErr: `field "env_vars.N": want a string or {value, operation, separator}, got a number`},
		{name: "env var value missing", raw: `{"env_vars": {"N": {"operation": "set"}}}`, wantErr: `field "env_vars.N.value": is required`},
		{name: "unknown operation", raw: `{"env_vars": {"N": {"value": "v", "operation": "replace"}}}`, wantErr: `field "env_vars.N.operation": want set, prepend or append, got "replace"`},
		{name: "separator is a number", raw: `{"env_vars": {"N": {"value": "v", "separator": 0}}}`, wantErr: `field "env_vars.N.separator": want a string, got a number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseExecConfig("pack.my_sensor", json.RawMessage(tc.raw))
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrExecConfig) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `"pack.my_sensor"`) {
					t.Fatalf("error = %v, want ErrExecConfig naming the sensor and %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseExecConfig:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestExpandLaunchTemplate(t *testing.T) {
	vars := map[string]string{"pack_dir": "/p", "env_dir": "/e", "interpreter": "/e/bin/python3", "manifest_path": "/p/requirements.txt"}
	tests := []struct{ in, want string }{
		{"{interpreter} -m pip install -r {manifest_path}", "/e/bin/python3 -m pip install -r /p/requirements.txt"},
		{"{pack_dir}/lib:{pack_dir}/vendor", "/p/lib:/p/vendor"},
		{"{env_dir}/node_modules", "/e/node_modules"},
		{"{action_file} stays", "{action_file} stays"},
		{"no placeholders", "no placeholders"},
	}
	for _, tc := range tests {
		if got := expandLaunchTemplate(tc.in, vars); got != tc.want {
			t.Errorf("expandLaunchTemplate(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// A value holding a placeholder is not expanded again (single pass).
	if got := expandLaunchTemplate("{pack_dir}", map[string]string{"pack_dir": "{env_dir}", "env_dir": "/e"}); got != "{env_dir}" {
		t.Errorf("second-pass expansion: got %q", got)
	}
}
