package canal

import (
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// TestGTIDAppliedAsAReplicaIsInHistory: a replica promoted without log_slave_updates has
// its old primary's GTIDs in @@gtid_slave_pos only, not in its binlogs' state, and streams
// from them: a checkpoint may be moved there. A server_id in neither is refused, naming
// both lists.
func TestGTIDAppliedAsAReplicaIsInHistory(t *testing.T) {
	state, applied := "0-5-46,0-1-201,1-1-1", "0-9-200,1-1-1"
	for _, c := range []struct {
		gtids string
		ok    bool
	}{
		{"0-9-200,1-1-1", true}, // applied as a replica
		{"0-9-150", true},       // before it
		{"0-1-201", true},       // written
		{"0-9-201", false},      // beyond what it applied
		{"0-8-1", false},        // a server_id in neither
	} {
		set, err := mysql.ParseMariadbGTIDSet(c.gtids)
		if err != nil {
			t.Fatal(err)
		}
		err = gtidsInHistory(set.(*mysql.MariadbGTIDSet), state, applied)
		if c.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "@@gtid_slave_pos") {
			t.Errorf("%s: %v; want in history: %v, a refusal naming both lists", c.gtids, err, c.ok)
		}
	}
}
