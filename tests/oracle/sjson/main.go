// Oracle for sjson as Argo Events v1.9.11 uses it for parameter destinations
// (pkg/sensors/triggers/params.go): SetBytes with a string value, or SetRawBytes with
// raw JSON when useRawData is set and the value is not a string.
//
// Case: {"id", "doc": "<raw JSON>", "path": "...", "value": "...", "raw": bool}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/tidwall/sjson"
)

type input struct {
	ID    string `json:"id"`
	Doc   string `json:"doc"`
	Path  string `json:"path"`
	Value string `json:"value"`
	Raw   bool   `json:"raw"`
}

func run(in input) (out map[string]interface{}) {
	out = map[string]interface{}{"id": in.ID}
	defer func() {
		if r := recover(); r != nil {
			out["panic"] = fmt.Sprint(r)
		}
	}()
	var res []byte
	var err error
	if in.Raw {
		res, err = sjson.SetRawBytes([]byte(in.Doc), in.Path, []byte(in.Value))
	} else {
		res, err = sjson.SetBytes([]byte(in.Doc), in.Path, in.Value)
	}
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	out["out"] = string(res)
	return out
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
		if err := enc.Encode(run(in)); err != nil {
			fmt.Fprintln(os.Stderr, "encode:", err)
			os.Exit(2)
		}
	}
}
