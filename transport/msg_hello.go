package transport

import (
	"encoding/binary"
	"fmt"
)

// magic opens every Hello body.
const magic = "LSTC"

// helloMsg is the first frame a client sends.
type helloMsg struct {
	// MaxVersion is the highest version the client speaks; it travels as
	// the header's version.
	MaxVersion uint8
	// MinVersion is the lowest version the client accepts.
	MinVersion uint8
	// MaxFrameBytes is the largest frame body the client accepts.
	MaxFrameBytes uint32
	// Name identifies the client in server logs.
	Name string
	// Credentials is a slot for authentication, empty for none.
	Credentials []byte
}

// appendHello appends a Hello frame.
func appendHello(dst []byte, m *helloMsg) []byte {
	dst, start := beginFrame(dst, TypeHello, 0)
	dst[start+offVersion] = m.MaxVersion
	dst = append(dst, magic...)
	dst = append(dst, m.MinVersion, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, m.MaxFrameBytes)
	dst = appendString(dst, m.Name)
	dst = appendBytes(dst, m.Credentials)
	return endFrame(dst, start)
}

// decodeHello decodes a Hello body into m; the caller sets MaxVersion from
// the header. Name and Credentials are copies.
func decodeHello(body []byte, m *helloMsg) error {
	if len(body) < 4 || string(body[:4]) != magic {
		return fmt.Errorf("%w: bad magic in Hello", ErrProtocol)
	}
	d := decoder{b: body[4:]}
	m.MinVersion = d.u8()
	d.zeros(3)
	m.MaxFrameBytes = d.u32()
	m.Name = d.str(maxName)
	m.Credentials = append([]byte(nil), d.bytes(maxCredentials)...)
	if err := d.finish(); err != nil {
		return err
	}
	if m.MaxFrameBytes < minFrameBytes {
		return fmt.Errorf("%w: client frame limit %d is below %d", ErrProtocol, m.MaxFrameBytes, minFrameBytes)
	}
	return nil
}

// welcomeMsg is the server's answer to a Hello.
type welcomeMsg struct {
	NodeID        uint64
	MaxFrameBytes uint32
	MaxInFlight   uint32
}

const welcomeSize = 16

// appendWelcome appends a Welcome frame.
func appendWelcome(dst []byte, m *welcomeMsg) []byte {
	dst, start := beginFrame(dst, TypeWelcome, 0)
	dst = binary.LittleEndian.AppendUint64(dst, m.NodeID)
	dst = binary.LittleEndian.AppendUint32(dst, m.MaxFrameBytes)
	dst = binary.LittleEndian.AppendUint32(dst, m.MaxInFlight)
	return endFrame(dst, start)
}

// decodeWelcome decodes a Welcome body into m.
func decodeWelcome(body []byte, m *welcomeMsg) error {
	if len(body) != welcomeSize {
		return fmt.Errorf("%w: Welcome body of %d bytes", ErrProtocol, len(body))
	}
	m.NodeID = binary.LittleEndian.Uint64(body)
	m.MaxFrameBytes = binary.LittleEndian.Uint32(body[8:])
	m.MaxInFlight = binary.LittleEndian.Uint32(body[12:])
	return nil
}

// appendPing appends a Ping frame; appendPong its answer.
func appendPing(dst []byte, id uint64) []byte {
	dst, start := beginFrame(dst, TypePing, id)
	return endFrame(dst, start)
}

func appendPong(dst []byte, id uint64) []byte {
	dst, start := beginFrame(dst, TypePong, id)
	return endFrame(dst, start)
}

// appendEnd appends an End frame, the normal end of a stream.
func appendEnd(dst []byte, id uint64) []byte {
	dst, start := beginFrame(dst, TypeEnd, id)
	return endFrame(dst, start)
}

// appendCancel appends a Cancel frame for request id.
func appendCancel(dst []byte, id uint64) []byte {
	dst, start := beginFrame(dst, TypeCancel, id)
	return endFrame(dst, start)
}

// decodeEmpty checks that the body of a message without fields is empty.
func decodeEmpty(t FrameType, body []byte) error {
	if len(body) != 0 {
		return fmt.Errorf("%w: %v body of %d bytes, want 0", ErrProtocol, t, len(body))
	}
	return nil
}
