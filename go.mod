module github.com/lockstitch/lockstitch

go 1.25

require golang.org/x/sys v0.34.0

require github.com/valyala/bytebufferpool v1.0.0
