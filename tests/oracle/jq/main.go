// Oracle for jq (gojq) as Argo Events v1.9.11 runs it in transforms
// (transform.go applyJQTransform): the data is decoded into map[string]interface{},
// the program's first output must be an object, and it is re-encoded with json.Marshal.
//
// Case: {"id", "program", "doc": "<raw JSON>"}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/itchyny/gojq"
)

type input struct {
	ID      string `json:"id"`
	Program string `json:"program"`
	Doc     string `json:"doc"`
}

func run(in input) (out map[string]interface{}) {
	out = map[string]interface{}{"id": in.ID}
	defer func() {
		if r := recover(); r != nil {
			out["panic"] = fmt.Sprint(r)
		}
	}()
	query, err := gojq.Parse(in.Program)
	if err != nil {
		out["parse_error"] = err.Error()
		return out
	}
	var data map[string]interface{}
	if err := json.Unmarshal([]byte(in.Doc), &data); err != nil {
		out["error"] = err.Error()
		return out
	}
	// Not in Argo: a deadline, so that a runaway generated program cannot hang the oracle.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, ok := query.RunWithContext(ctx, data).Next()
	if !ok {
		out["error"] = "no output available from the jq command execution"
		return out
	}
	m, isMap := v.(map[string]interface{})
	if !isMap {
		if e, isErr := v.(error); isErr {
			out["error"] = e.Error()
		} else {
			out["error"] = "jq transformation output must be a JSON object"
		}
		return out
	}
	b, err := json.Marshal(m)
	if err != nil {
		out["error"] = err.Error()
		return out
	}
	out["data"] = string(b)
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
