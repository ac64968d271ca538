// Oracle for Go's regexp (RE2) as Argo Events v1.9.11 uses it: data filter string values
// (regexp.Compile, then Match on the gjson string, unanchored) and govaluate's =~ / !~.
//
// Case: {"id", "pattern", "subject"}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

type input struct {
	ID      string `json:"id"`
	Pattern string `json:"pattern"`
	Subject string `json:"subject"`
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for sc.Scan() {
		var in input
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			fmt.Fprintln(os.Stderr, "bad case:", err)
			os.Exit(2)
		}
		out := map[string]interface{}{"id": in.ID}
		if rx, err := regexp.Compile(in.Pattern); err != nil {
			out["error"] = err.Error()
		} else {
			out["match"] = rx.Match([]byte(in.Subject))
		}
		if err := enc.Encode(out); err != nil {
			fmt.Fprintln(os.Stderr, "encode:", err)
			os.Exit(2)
		}
	}
}
