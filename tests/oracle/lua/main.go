// Oracle for Lua (gopher-lua) as Argo Events v1.9.11 runs it in script filters
// (filter.go filterScript: passes when the last value returned is true) and script
// transforms (transform.go applyScriptTransform: the returned table becomes the data).
// The conversions follow Argo's mapToTable / toGoValue behaviour: JSON numbers are
// float64, null members are dropped, arrays keep only objects, numbers, strings and
// bools; a returned table with no array part (MaxN 0) is an object, otherwise an array
// of 1..MaxN; json.Marshal sorts keys.
//
// Case: {"id", "script", "doc": "<raw JSON>", "mode": "filter"|"transform"}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type input struct {
	ID     string `json:"id"`
	Script string `json:"script"`
	Doc    string `json:"doc"`
	Mode   string `json:"mode"`
}

func toTable(m map[string]interface{}) *lua.LTable {
	t := &lua.LTable{}
	for k, v := range m {
		switch x := v.(type) {
		case float64:
			t.RawSetString(k, lua.LNumber(x))
		case string:
			t.RawSetString(k, lua.LString(x))
		case bool:
			t.RawSetString(k, lua.LBool(x))
		case map[string]interface{}:
			t.RawSetString(k, toTable(x))
		case []interface{}:
			arr := &lua.LTable{}
			for _, item := range x {
				switch y := item.(type) {
				case map[string]interface{}:
					arr.Append(toTable(y))
				case float64:
					arr.Append(lua.LNumber(y))
				case string:
					arr.Append(lua.LString(y))
				case bool:
					arr.Append(lua.LBool(y))
				}
			}
			t.RawSetString(k, arr)
		}
	}
	return t
}

func fromLua(v lua.LValue) interface{} {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(x)
	case lua.LString:
		return string(x)
	case lua.LNumber:
		return float64(x)
	case *lua.LTable:
		n := x.MaxN()
		forceArray := false
		if mt, ok := x.Metatable.(*lua.LTable); ok && mt.RawGetString("__is_array") == lua.LTrue {
			forceArray = true
		}
		if n == 0 && !forceArray {
			obj := map[string]interface{}{}
			x.ForEach(func(k, val lua.LValue) { obj[k.String()] = fromLua(val) })
			return obj
		}
		arr := make([]interface{}, 0, n)
		for i := 1; i <= n; i++ {
			arr = append(arr, fromLua(x.RawGetInt(i)))
		}
		return arr
	default:
		return v
	}
}

func run(in input) (out map[string]interface{}) {
	out = map[string]interface{}{"id": in.ID}
	defer func() {
		if r := recover(); r != nil {
			out["panic"] = fmt.Sprint(r)
		}
	}()
	var data map[string]interface{}
	if err := json.Unmarshal([]byte(in.Doc), &data); err != nil {
		out["error"] = err.Error()
		return out
	}
	l := lua.NewState()
	defer l.Close()
	// Not in Argo: a deadline, so that a runaway generated script cannot hang the oracle.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("event", toTable(data))
	if err := l.DoString(in.Script); err != nil {
		out["error"] = err.Error()
		return out
	}
	last := l.Get(-1)
	if in.Mode == "filter" {
		out["result"] = last == lua.LTrue
		return out
	}
	tbl, ok := last.(*lua.LTable)
	if !ok {
		out["error"] = "transformation script output type is not of lua table"
		return out
	}
	b, err := json.Marshal(fromLua(tbl))
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
