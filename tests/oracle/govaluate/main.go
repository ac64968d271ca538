// Oracle for expression filters as Argo Events v1.9.11 evaluates them
// (pkg/sensors/dependencies/filter.go filterExpr): each field is gjson.GetBytes(data,
// path).Value(), the expression is govaluate.NewEvaluableExpression, then Evaluate.
// Argo passes the filter only when the result is the bool true.
//
// Case: {"id", "doc": "<raw JSON>", "fields": [[name, path], ...], "expr": "..."}.
// Result: missing | parse_error | error | {type: "%T", v: "%v", json}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/Knetic/govaluate"
	"github.com/tidwall/gjson"
)

type input struct {
	ID     string      `json:"id"`
	Doc    string      `json:"doc"`
	Fields [][2]string `json:"fields"`
	Expr   string      `json:"expr"`
}

func run(in input) (out map[string]interface{}) {
	out = map[string]interface{}{"id": in.ID}
	defer func() {
		if r := recover(); r != nil {
			out["panic"] = fmt.Sprint(r)
		}
	}()
	params := map[string]interface{}{}
	for _, f := range in.Fields {
		res := gjson.GetBytes([]byte(in.Doc), f[1])
		if !res.Exists() {
			out["missing"] = f[1]
			return out
		}
		params[f[0]] = res.Value()
	}
	expr, err := govaluate.NewEvaluableExpression(in.Expr)
	if err != nil {
		out["parse_error"] = err.Error()
		return out
	}
	result, err := expr.Evaluate(params)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	out["type"] = fmt.Sprintf("%T", result)
	out["v"] = fmt.Sprintf("%v", result)
	out["pass"] = result == true
	if b, err := json.Marshal(result); err == nil {
		out["json"] = string(b)
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
}
