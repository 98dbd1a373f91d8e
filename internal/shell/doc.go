// Package shell writes command lines the daemon and the CLI suggest to operators (a
// resync to run, the next page of a listing) so that they can be pasted into a POSIX
// shell as they are.
package shell
