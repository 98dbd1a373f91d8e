package canal

// SetRowPlans switches the rows plans (rowsplan.go) on or off for a test and returns the
// number of rows events they decoded so far.
func SetRowPlans(on bool) uint64 {
	rowPlansEnabled = on
	return plannedEvents.Load()
}
