{{/* Namespace of every namespaced object. */}}
{{- define "zonda.namespace" -}}
{{- .Values.namespace.name -}}
{{- end -}}

{{/* Common labels; pass a dict with "root" (the chart context) and "component". */}}
{{- define "zonda.labels" -}}
app.kubernetes.io/name: zonda
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: zonda
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component. */}}
{{- define "zonda.selector" -}}
app.kubernetes.io/name: zonda
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "zonda.postgres.name" -}}{{ .Values.mlflow.name }}-postgres{{- end -}}
{{- define "zonda.minio.name" -}}{{ .Values.mlflow.name }}-minio{{- end -}}

{{/* Host headers the MLflow server accepts: its Service names, localhost, and extra hosts. */}}
{{- define "zonda.mlflow.allowedHosts" -}}
{{- $svc := .Values.mlflow.name -}}
{{- $ns := include "zonda.namespace" . -}}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" -}}
{{- range $name := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $hosts = append $hosts $name -}}
{{- $hosts = append $hosts (printf "%s:*" $name) -}}
{{- end -}}
{{- range .Values.mlflow.extraAllowedHosts -}}
{{- $hosts = append $hosts . -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* Pod security context shared by the chart's workloads (the zonda images' non-root user). */}}
{{- define "zonda.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "zonda.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* S3 settings of the MLflow server and its init container. */}}
{{- define "zonda.mlflow.s3Env" -}}
{{- $a := .Values.mlflow.artifacts -}}
{{- $endpoint := $a.s3EndpointUrl -}}
{{- if and .Values.minio.enabled (not $endpoint) -}}
{{- $endpoint = printf "http://%s:9000" (include "zonda.minio.name" .) -}}
{{- end -}}
{{- if $endpoint }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ $endpoint | quote }}
{{- end }}
{{- if $a.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $a.credentialsSecret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $a.credentialsSecret }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end -}}
