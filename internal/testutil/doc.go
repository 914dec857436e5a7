// Package testutil holds helpers shared by tests.
package testutil
