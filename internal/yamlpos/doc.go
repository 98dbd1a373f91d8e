// Package yamlpos places a YAML file's syntax errors, which yaml.v3 reports as text: the
// line it names, and the tabs in indentation it reports without naming them. The config
// and the rules file share it, so both report such a mistake at its line.
package yamlpos
