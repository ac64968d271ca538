// Oracle for Go text/template with sprig as Argo Events v1.9.11 runs it:
//   - "param" (pkg/sensors/triggers/params.go getValueWithTemplate): .Input is
//     gjson.ParseBytes(data).Value();
//   - "filter" (pkg/sensors/dependencies/filter.go filterData): .Input is
//     gjson.GetBytes(data, path).String().
//
// Both parse with template.New("param").Funcs(sprig.FuncMap()).
//
// Case: {"id", "tpl", "doc": "<raw JSON>", "mode": "param"|"filter", "path"}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"

	sprig "github.com/Masterminds/sprig/v3"
	"github.com/tidwall/gjson"
)

type input struct {
	ID   string `json:"id"`
	Tpl  string `json:"tpl"`
	Doc  string `json:"doc"`
	Mode string `json:"mode"`
	Path string `json:"path"`
}

func run(in input) (out map[string]interface{}) {
	out = map[string]interface{}{"id": in.ID}
	defer func() {
		if r := recover(); r != nil {
			out["panic"] = fmt.Sprint(r)
		}
	}()
	var value interface{}
	if in.Mode == "filter" {
		value = gjson.GetBytes([]byte(in.Doc), in.Path).String()
	} else {
		value = gjson.ParseBytes([]byte(in.Doc)).Value()
	}
	tpl, err := template.New("param").Funcs(sprig.FuncMap()).Parse(in.Tpl)
	if err != nil {
		out["parse_error"] = err.Error()
		return out
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, map[string]interface{}{"Input": value}); err != nil {
		out["error"] = err.Error()
		return out
	}
	out["out"] = buf.String()
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
