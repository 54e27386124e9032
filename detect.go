package main

// Interpreter is one detected runtime: canonical name, resolved path and the
// version read from its version command ("" when it could not be read).
type Interpreter struct {
	Name    string
	Path    string
	Version string
}
