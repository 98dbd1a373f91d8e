// Package testutil gives integration tests the real parts they run against: a fresh
// database on the private MariaDB that scripts/mariadb.sh starts, a Kafka-protocol broker
// (franz-go's kfake), and an independent franz-go consumer to read what was published.
package testutil
