package flows

// connList is an intrusive doubly linked list of conversations ordered by
// last activity: moving a conversation to the back on each packet is O(1),
// and the idle ones are always at the front.
type connList struct{ head, tail *conn }

func (l *connList) front() *conn { return l.head }

func (l *connList) pushBack(c *conn) {
	c.prev, c.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

func (l *connList) moveToBack(c *conn) {
	if l.tail == c {
		return
	}
	l.remove(c)
	l.pushBack(c)
}
