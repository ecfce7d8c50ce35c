package stateres

// heap is a binary min-heap of int32 under a caller's strict order, used to
// pick the smallest candidate at each step of Kahn's algorithm.
type heap struct {
	less  func(a, b int32) bool
	items []int32
}

func newHeap(less func(a, b int32) bool) *heap { return &heap{less: less} }

func (h *heap) len() int { return len(h.items) }

func (h *heap) push(x int32) {
	h.items = append(h.items, x)
	i := len(h.items) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(h.items[i], h.items[parent]) {
			break
		}
		h.items[i], h.items[parent] = h.items[parent], h.items[i]
		i = parent
	}
}

func (h *heap) pop() int32 {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	i := 0
	for {
		l, r, small := 2*i+1, 2*i+2, i
		if l < last && h.less(h.items[l], h.items[small]) {
			small = l
		}
		if r < last && h.less(h.items[r], h.items[small]) {
			small = r
		}
		if small == i {
			return top
		}
		h.items[i], h.items[small] = h.items[small], h.items[i]
		i = small
	}
}
