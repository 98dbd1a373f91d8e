package canal

// SetRowPlans switches the rows plans (rowsplan.go) on or off for a test and returns the
// number of rows events they decoded so far, and how many of those the parser goroutine
// decoded ahead of the reader.
func SetRowPlans(on bool) (planned, ahead uint64) {
	rowPlansEnabled = on
	return plannedEvents.Load(), decodedAhead.Load()
}
