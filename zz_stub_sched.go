package main

// TEMPORARY until h/runtime lands.
func versionIneligible(sp sensorSpec, versions map[string][]string) string { return "" }
