module github.com/lockstitch/lockstitch

go 1.24

require golang.org/x/sys v0.34.0
