package main

import "path/filepath"

func dirOf(path string) string { return filepath.Dir(path) }

func sameFile(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}
