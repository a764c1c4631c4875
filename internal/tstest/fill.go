package tstest

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"
	"unsafe"
)

// Fill sets every field of the struct *ptr, recursively, to a value that
// is not its zero value, for drift guards: a copy or conversion that
// leaves a field zero dropped it. netip and time values get valid
// non-zero values; key types (structs of unexported byte arrays) get
// bytes of 1; slices and maps get one element; pointers a filled value.
// It panics on kinds it cannot fill (channels, funcs, interfaces), so a
// guarded struct that gains one says so.
func Fill(ptr any) {
	v := reflect.ValueOf(ptr)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("tstest.Fill: want a pointer to a struct, got %T", ptr))
	}
	fill(v.Elem())
}

// FillField sets only field name of the struct *ptr, as Fill would.
func FillField(ptr any, name string) {
	f := reflect.ValueOf(ptr).Elem().FieldByName(name)
	if !f.IsValid() {
		panic(fmt.Sprintf("tstest.FillField: %T has no field %s", ptr, name))
	}
	fill(f)
}

var (
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	addrPortType = reflect.TypeFor[netip.AddrPort]()
	timeType     = reflect.TypeFor[time.Time]()
)

func fill(v reflect.Value) {
	if !v.CanSet() {
		// An unexported field (the bytes of a key): reach it anyway.
		v = reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
	}
	switch v.Type() {
	case addrType:
		v.Set(reflect.ValueOf(netip.MustParseAddr("100.64.0.1")))
		return
	case prefixType:
		v.Set(reflect.ValueOf(netip.MustParsePrefix("100.64.0.1/32")))
		return
	case addrPortType:
		v.Set(reflect.ValueOf(netip.MustParseAddrPort("192.0.2.1:41641")))
		return
	case timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.String:
		v.SetString("x")
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i))
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem())
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	default:
		panic(fmt.Sprintf("tstest.Fill: cannot fill a %s", v.Type()))
	}
}

// ZeroFields returns the names of the fields of struct s (a struct or a
// pointer to one) that hold their zero value.
func ZeroFields(s any) []string {
	v := reflect.Indirect(reflect.ValueOf(s))
	var out []string
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			out = append(out, v.Type().Field(i).Name)
		}
	}
	return out
}

// FieldNames returns the names of struct type T's fields, in order.
func FieldNames[T any]() []string {
	t := reflect.TypeFor[T]()
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Name
	}
	return out
}
