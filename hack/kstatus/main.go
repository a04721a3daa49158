// Command kstatus prints the kstatus status (sigs.k8s.io/cli-utils/pkg/kstatus/status) of
// Kubernetes objects, the way Flux and other kstatus users judge them:
//
//	kstatus FILE...        one "<file>: <Status> <message>" line per object
//	kstatus < objects.yaml the same, with "-" as the file name
//
// A file may hold several YAML documents. Exit status 1 on unreadable input; the computed
// status never changes the exit status.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		files = []string{"-"}
	}
	failed := false
	for _, name := range files {
		if err := report(name, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func report(name string, out io.Writer) error {
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// Through JSON into Unstructured, so integers stay int64 as they do in a real client.
		json, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return err
		}
		if string(json) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(json); err != nil {
			return err
		}
		result, err := status.Compute(obj)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s %s\n", name, result.Status, result.Message)
	}
}
