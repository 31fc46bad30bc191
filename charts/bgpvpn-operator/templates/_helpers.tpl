{{- define "bgpvpn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bgpvpn.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "bgpvpn.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "bgpvpn.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "bgpvpn.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "bgpvpn.fullname" .)) .Values.serviceAccount.operatorName -}}
{{- end -}}

{{- define "bgpvpn.agentServiceAccount" -}}
{{- default (printf "%s-agent" (include "bgpvpn.fullname" .)) .Values.serviceAccount.agentName -}}
{{- end -}}

{{/* The apiserver's address for clusters without kube-proxy (the `kubernetes` Service's
cluster IP routes nowhere there); empty: the in-cluster default. */}}
{{- define "bgpvpn.apiServerEnv" -}}
{{- with .Values.apiServer.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ required "apiServer.port is required with apiServer.host" $.Values.apiServer.port | quote }}
{{- end }}
{{- end -}}
