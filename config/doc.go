// Package config loads stocksync's YAML configuration: defaults first, then the file,
// then STOCKSYNC_SECTION_KEY environment variables. Loading is strict: an unknown key, a
// value the key cannot take (named, with what the key wants) or a value Validate rejects
// is reported with the file, the key path and its line (or the environment variable that
// set it), every problem at once, and nothing half-configured is returned.
package config
