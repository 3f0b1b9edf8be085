package push

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/timestamppb" // registers google/protobuf/timestamp.proto

	"github.com/lokilab/lokilab/pkg/labels"
)

// pushSchema is push.proto as a descriptor, so the reference protobuf
// runtime (google.golang.org/protobuf) can encode and decode the same
// messages our hand-written codec does. TestSchemaMatchesProtoFile keeps it
// in step with push.proto.
func pushSchema(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, repeated bool, typeName string) *descriptorpb.FieldDescriptorProto {
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if repeated {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		str = descriptorpb.FieldDescriptorProto_TYPE_STRING
		msg = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		u64 = descriptorpb.FieldDescriptorProto_TYPE_UINT64
	)
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("push.proto"),
		Package:    proto.String("logproto"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("PushRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				field("streams", 1, msg, true, ".logproto.StreamAdapter"),
			}},
			{Name: proto.String("StreamAdapter"), Field: []*descriptorpb.FieldDescriptorProto{
				field("labels", 1, str, false, ""),
				field("entries", 2, msg, true, ".logproto.EntryAdapter"),
				field("hash", 3, u64, false, ""),
			}},
			{Name: proto.String("EntryAdapter"), Field: []*descriptorpb.FieldDescriptorProto{
				field("timestamp", 1, msg, false, ".google.protobuf.Timestamp"),
				field("line", 2, str, false, ""),
				field("structuredMetadata", 3, msg, true, ".logproto.LabelPairAdapter"),
			}},
			{Name: proto.String("LabelPairAdapter"), Field: []*descriptorpb.FieldDescriptorProto{
				field("name", 1, str, false, ""),
				field("value", 2, str, false, ""),
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestSchemaMatchesProtoFile(t *testing.T) {
	src, err := os.ReadFile("push.proto")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	msgs := pushSchema(t).Messages()
	for i := range msgs.Len() {
		m := msgs.Get(i)
		if !strings.Contains(text, "message "+string(m.Name())+" {") {
			t.Errorf("push.proto lacks message %s", m.Name())
		}
		for j := range m.Fields().Len() {
			f := m.Fields().Get(j)
			typ := f.Kind().String()
			if f.Kind() == protoreflect.MessageKind {
				typ = string(f.Message().FullName())
				typ = strings.TrimPrefix(typ, "logproto.")
			}
			decl := fmt.Sprintf("%s %s = %d;", typ, f.Name(), f.Number())
			if f.Cardinality() == protoreflect.Repeated {
				decl = "repeated " + decl
			}
			if !strings.Contains(text, decl) {
				t.Errorf("push.proto lacks %q in %s", decl, m.Name())
			}
		}
	}
}

// toDynamic builds the reference runtime's message for req.
func toDynamic(fd protoreflect.FileDescriptor, req *Request) *dynamicpb.Message {
	md := fd.Messages()
	reqMD, streamMD, entryMD, pairMD := md.ByName("PushRequest"), md.ByName("StreamAdapter"), md.ByName("EntryAdapter"), md.ByName("LabelPairAdapter")
	tsMD := entryMD.Fields().ByName("timestamp").Message()
	m := dynamicpb.NewMessage(reqMD)
	streams := m.Mutable(reqMD.Fields().ByName("streams")).List()
	for _, s := range req.Streams {
		sm := dynamicpb.NewMessage(streamMD)
		sm.Set(streamMD.Fields().ByName("labels"), protoreflect.ValueOfString(s.Labels))
		entries := sm.Mutable(streamMD.Fields().ByName("entries")).List()
		for _, e := range s.Entries {
			em := dynamicpb.NewMessage(entryMD)
			ts := dynamicpb.NewMessage(tsMD)
			sec, nsec := splitTimestamp(e.Timestamp)
			ts.Set(tsMD.Fields().ByName("seconds"), protoreflect.ValueOfInt64(sec))
			ts.Set(tsMD.Fields().ByName("nanos"), protoreflect.ValueOfInt32(nsec))
			em.Set(entryMD.Fields().ByName("timestamp"), protoreflect.ValueOfMessage(ts))
			em.Set(entryMD.Fields().ByName("line"), protoreflect.ValueOfString(e.Line))
			md := em.Mutable(entryMD.Fields().ByName("structuredMetadata")).List()
			for _, l := range e.StructuredMetadata {
				pm := dynamicpb.NewMessage(pairMD)
				pm.Set(pairMD.Fields().ByName("name"), protoreflect.ValueOfString(l.Name))
				pm.Set(pairMD.Fields().ByName("value"), protoreflect.ValueOfString(l.Value))
				md.Append(protoreflect.ValueOfMessage(pm))
			}
			entries.Append(protoreflect.ValueOfMessage(em))
		}
		streams.Append(protoreflect.ValueOfMessage(sm))
	}
	return m
}

func compatRequest() *Request {
	// Valid UTF-8 only: the reference runtime rejects invalid UTF-8 in
	// proto3 strings (Loki's gogo-generated code does not check).
	return &Request{Streams: []Stream{
		{Labels: `{app="api", env="prod"}`, Entries: []Entry{
			{Timestamp: 1_700_000_000_123_456_789, Line: "GET /api 200"},
			{Timestamp: 1_700_000_001_000_000_000, Line: "with metadata", StructuredMetadata: []labels.Label{{Name: "trace_id", Value: "0af7651916cd43dd"}, {Name: "user", Value: "u-1"}}},
			{Timestamp: -1_500_000_000, Line: "before the epoch"},
			{Timestamp: 0, Line: ""},
		}},
		{Labels: `{app="db"}`, Entries: []Entry{{Timestamp: 42, Line: "ünïcödé"}}},
	}}
}

// TestWireCompatibleWithReferenceRuntime is the compatibility claim of
// push.proto: our encoder writes exactly the bytes the reference protobuf
// runtime writes for the same message, and each side decodes the other.
func TestWireCompatibleWithReferenceRuntime(t *testing.T) {
	fd := pushSchema(t)
	req := compatRequest()

	ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(toDynamic(fd, req))
	if err != nil {
		t.Fatal(err)
	}
	ours := AppendProto(nil, req)
	if !bytes.Equal(ours, ref) {
		t.Fatalf("encodings differ:\nours %x\nref  %x", ours, ref)
	}

	var decoded Request
	if err := DecodeProto(ref, &decoded); err != nil {
		t.Fatal(err)
	}
	if !equalRequests(req, &decoded) {
		t.Fatalf("decoding the reference encoding gave %+v", decoded)
	}

	back := dynamicpb.NewMessage(fd.Messages().ByName("PushRequest"))
	if err := proto.Unmarshal(ours, back); err != nil {
		t.Fatalf("reference runtime cannot decode our encoding: %v", err)
	}
	if !proto.Equal(back, toDynamic(fd, req)) {
		t.Fatal("reference runtime decoded our encoding to a different message")
	}
}
