// Command wiremortem analyses packet captures and the logs beside them and
// labels what went wrong in each TCP conversation.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "wiremortem: under construction")
	os.Exit(2)
}
