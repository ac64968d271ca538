// Oracle for GJSON paths as Argo Events v1.9.11 uses them: gjson.GetBytes on the raw
// event data, then Exists, Type, String() (dataKey, string data filters), Raw (dataKey on
// objects, arrays and null), Float() (number data filters), Bool() (bool data filters)
// and Value() (expr filter parameters, template input).
//
// One JSON case per input line: {"id": ..., "doc": "<raw JSON text>", "path": "..."}.
// One JSON result per output line.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/tidwall/gjson"
)

type input struct {
	ID   string `json:"id"`
	Doc  string `json:"doc"`
	Path string `json:"path"`
}

func run(in input) (out map[string]interface{}) {
	out = map[string]interface{}{"id": in.ID}
	defer func() {
		if r := recover(); r != nil {
			out["panic"] = fmt.Sprint(r)
		}
	}()
	res := gjson.GetBytes([]byte(in.Doc), in.Path)
	out["exists"] = res.Exists()
	if !res.Exists() {
		return out
	}
	out["type"] = res.Type.String()
	out["str"] = res.String()
	out["raw"] = res.Raw
	out["num"] = strconv.FormatFloat(res.Float(), 'g', -1, 64)
	out["bool"] = res.Bool()
	if b, err := json.Marshal(res.Value()); err == nil {
		out["value"] = string(b)
	}
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
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		os.Exit(2)
	}
}
