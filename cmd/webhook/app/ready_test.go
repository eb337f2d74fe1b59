package app

import (
	"errors"
	"net/http"
	"testing"
)

// succeedOnce runs its check until the first success and never after.
func TestSucceedOnce(t *testing.T) {
	results := []error{errors.New("not started"), errors.New("not reachable"), nil, errors.New("would fail now")}
	calls := 0
	check := succeedOnce(func(*http.Request) error {
		err := results[calls]
		calls++
		return err
	})
	for i, want := range []bool{false, false, true, true, true} {
		if got := check(nil) == nil; got != want {
			t.Errorf("call %d: passed %t, want %t", i+1, got, want)
		}
	}
	if calls != 3 {
		t.Errorf("the check ran %d times, want 3 (until it first passed)", calls)
	}
}
