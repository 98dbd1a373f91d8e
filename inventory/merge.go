package inventory

import "context"

type merger struct{ s *Store }

func newMerger(s *Store) *merger { return &merger{s: s} }

func (m *merger) deduct(ctx context.Context, req DeductRequest) (Order, error) {
	return m.s.deductAlone(ctx, req)
}
