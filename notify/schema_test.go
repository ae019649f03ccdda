package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// jsonSchema checks JSON values against result.schema.json. It knows the
// subset of JSON Schema 2020-12 the file uses and refuses any other
// keyword, so nothing in the file goes unchecked.
type jsonSchema struct {
	root map[string]any
	// strict also refuses properties the schema does not declare: every
	// field migrun sends is documented, though receivers must accept more.
	strict bool
}

func loadSchema(t *testing.T) *jsonSchema {
	t.Helper()
	raw, err := os.ReadFile("result.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	root, ok := decodeJSON(t, raw).(map[string]any)
	if !ok {
		t.Fatal("the schema is not an object")
	}
	return &jsonSchema{root: root, strict: true}
}

func decodeJSON(t *testing.T, raw []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	if dec.More() {
		t.Fatalf("trailing data after the JSON:\n%s", raw)
	}
	return v
}

// annotations are keywords that do not constrain.
var annotations = map[string]bool{"$schema": true, "$id": true, "$defs": true, "title": true, "description": true, "examples": true, "$comment": true}

// validate returns what is wrong with v at path, by schema s.
func (js *jsonSchema) validate(s map[string]any, v any, path string) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	for key, arg := range s {
		switch key {
		case "$ref":
			ref, _ := arg.(string)
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			def, found := js.root["$defs"].(map[string]any)[name].(map[string]any)
			if !ok || !found {
				fail("unresolvable $ref %q", ref)
				continue
			}
			errs = append(errs, js.validate(def, v, path)...)
		case "type":
			types, ok := arg.([]any)
			if !ok {
				types = []any{arg}
			}
			if !slices.ContainsFunc(types, func(t any) bool { return isType(v, t.(string)) }) {
				fail("%s is not of type %v", short(v), arg)
			}
		case "const":
			if !reflect.DeepEqual(v, arg) {
				fail("%s is not %v", short(v), arg)
			}
		case "enum":
			if !slices.ContainsFunc(arg.([]any), func(e any) bool { return reflect.DeepEqual(v, e) }) {
				fail("%s is not one of %v", short(v), arg)
			}
		case "anyOf":
			ok := false
			for _, sub := range arg.([]any) {
				if len(js.validate(sub.(map[string]any), v, path)) == 0 {
					ok = true
				}
			}
			if !ok {
				fail("%s matches none of anyOf", short(v))
			}
		case "minimum":
			if n, ok := v.(json.Number); ok {
				f, _ := n.Float64()
				min, _ := arg.(json.Number).Float64()
				if f < min {
					fail("%v is below %v", n, min)
				}
			}
		case "minLength":
			if str, ok := v.(string); ok {
				if min, _ := arg.(json.Number).Int64(); int64(utf8.RuneCountInString(str)) < min {
					fail("%q is shorter than %d", str, min)
				}
			}
		case "format":
			if str, ok := v.(string); ok && arg == "date-time" {
				if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
					fail("%q is not an RFC 3339 date-time", str)
				}
			} else if arg != "date-time" {
				fail("unsupported format %v", arg)
			}
		case "required":
			if obj, ok := v.(map[string]any); ok {
				for _, name := range arg.([]any) {
					if _, found := obj[name.(string)]; !found {
						fail("property %q is missing", name)
					}
				}
			}
		case "properties":
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			props := arg.(map[string]any)
			for name, value := range obj {
				if sub, found := props[name]; found {
					errs = append(errs, js.validate(sub.(map[string]any), value, path+"."+name)...)
				} else if js.strict {
					fail("property %q is not in the schema", name)
				}
			}
		case "items":
			if arr, ok := v.([]any); ok {
				for i, item := range arr {
					errs = append(errs, js.validate(arg.(map[string]any), item, fmt.Sprintf("%s[%d]", path, i))...)
				}
			}
		default:
			if !annotations[key] {
				fail("the test's validator does not know the keyword %q", key)
			}
		}
	}
	return errs
}

func isType(v any, typ string) bool {
	switch v := v.(type) {
	case nil:
		return typ == "null"
	case bool:
		return typ == "boolean"
	case string:
		return typ == "string"
	case json.Number:
		_, err := v.Int64()
		return typ == "number" || typ == "integer" && err == nil
	case []any:
		return typ == "array"
	case map[string]any:
		return typ == "object"
	}
	return false
}

func short(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// TestSchemaIsWellFormed: the schema says what every property means, and
// requires every property it declares (each is always present).
func TestSchemaIsWellFormed(t *testing.T) {
	js := loadSchema(t)
	if js.root["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema %v", js.root["$schema"])
	}
	objects := map[string]map[string]any{"document": js.root}
	for name, def := range js.root["$defs"].(map[string]any) {
		objects[name] = def.(map[string]any)
	}
	for name, obj := range objects {
		props := obj["properties"].(map[string]any)
		var required []string
		for _, r := range obj["required"].([]any) {
			required = append(required, r.(string))
		}
		var declared []string
		for p, sub := range props {
			declared = append(declared, p)
			if d, _ := sub.(map[string]any)["description"].(string); d == "" && sub.(map[string]any)["$ref"] == nil {
				t.Errorf("%s.%s has no description", name, p)
			}
		}
		slices.Sort(required)
		slices.Sort(declared)
		if !slices.Equal(required, declared) {
			t.Errorf("%s: required %v, declared %v", name, required, declared)
		}
	}
}

// TestValidatorCanFail: the validator finds what is wrong, so a document
// that passes it passes for a reason.
func TestValidatorCanFail(t *testing.T) {
	js := loadSchema(t)
	good, err := encodeDocument(results["failed migration"].Document())
	if err != nil {
		t.Fatal(err)
	}
	if errs := js.validate(js.root, decodeJSON(t, good), "$"); len(errs) > 0 {
		t.Fatalf("a good document fails: %v", errs)
	}
	tests := map[string]func(map[string]any){
		"missing property":    func(d map[string]any) { delete(d, "headline") },
		"undeclared property": func(d map[string]any) { d["extra"] = true },
		"wrong schema":        func(d map[string]any) { d["schema"] = "migrun.result/v2" },
		"wrong type":          func(d map[string]any) { d["exit_status"] = "1" },
		"not an integer":      func(d map[string]any) { d["exit_status"] = json.Number("1.5") },
		"negative":            func(d map[string]any) { d["duration_seconds"] = json.Number("-1") },
		"bad date":            func(d map[string]any) { d["started"] = "yesterday" },
		"unknown severity":    func(d map[string]any) { d["severity"] = "meh" },
		"empty outcome":       func(d map[string]any) { d["outcome"] = "" },
		"bad nested":          func(d map[string]any) { d["lock"].(map[string]any)["acquired"] = "yes" },
		"bad item":            func(d map[string]any) { d["migrations"].([]any)[0].(map[string]any)["action"] = "exploded" },
		"bad failed":          func(d map[string]any) { d["failed_migration"] = "AddFlag" },
		"bad attempt":         func(d map[string]any) { d["attempts"] = []any{map[string]any{}} },
	}
	for name, mutate := range tests {
		d := decodeJSON(t, good).(map[string]any)
		mutate(d)
		if errs := js.validate(js.root, d, "$"); len(errs) == 0 {
			t.Errorf("%s: the validator found nothing wrong", name)
		}
	}
}
