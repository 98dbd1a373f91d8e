// Package rules compiles a YAML rules file (parsed by rules/rulefmt) into an immutable
// Set and evaluates it over committed row changes with an Engine: row rules emit one
// message per change, aggregate rules one per touched group and transaction, transition
// rules one per change of a value. Messages are encoded by hand in the debezium, canal
// or maxwell envelope described in docs/topics.md.
package rules
