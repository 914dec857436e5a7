package transport

// Admin (0x0B) carries an administrative request and AdminResult (0x8B)
// its answer. Both bodies are opaque to the transport: the node defines
// them (the lockstitch server uses JSON). They are not on a hot path.

// appendAdmin appends an Admin frame carrying req.
func appendAdmin(dst []byte, id uint64, req []byte) []byte {
	dst, start := beginFrame(dst, TypeAdmin, id)
	dst = append(dst, req...)
	return endFrame(dst, start)
}

// appendAdminResult appends an AdminResult frame carrying res.
func appendAdminResult(dst []byte, id uint64, res []byte) []byte {
	dst, start := beginFrame(dst, TypeAdminResult, id)
	dst = append(dst, res...)
	return endFrame(dst, start)
}
