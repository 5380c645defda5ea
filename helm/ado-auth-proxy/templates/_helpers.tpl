{{- define "ado-auth-proxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ado-auth-proxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ado-auth-proxy.labels" -}}
app.kubernetes.io/name: {{ include "ado-auth-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ado-auth-proxy.selector" -}}
app.kubernetes.io/name: {{ include "ado-auth-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ado-auth-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ado-auth-proxy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ado-auth-proxy.secretName" -}}
{{- default (include "ado-auth-proxy.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "ado-auth-proxy.hasSecret" -}}
{{- if or .Values.existingSecret .Values.secrets.clientSecret .Values.secrets.sessionKeys .Values.secrets.redisPassword .Values.secrets.pat .Values.secrets.callerSecret -}}true{{- end -}}
{{- end -}}

{{/* One TOML value: strings and lists as JSON (valid TOML), the rest as is. */}}
{{- define "ado-auth-proxy.tomlValue" -}}
{{- if or (kindIs "string" .) (kindIs "slice" .) -}}
{{- toJson . -}}
{{- else if kindIs "float64" . -}}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* The proxy's TOML config from .Values.config (sections, then subtables). */}}
{{- define "ado-auth-proxy.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.redis.url -}}
{{- $session := default dict (get $config "session") -}}
{{- $_ := set $session "store" "redis" -}}
{{- $_ := set $session "redis_url" .Values.redis.url -}}
{{- if or .Values.secrets.redisPassword .Values.existingSecret -}}
{{- if not (hasKey $session "redis_password_file") -}}
{{- if or .Values.secrets.redisPassword (not .Values.existingSecret) -}}
{{- $_ := set $session "redis_password_file" "/var/run/secrets/ado-auth-proxy/redis-password" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "session" $session -}}
{{- end -}}
{{- /* The names in-cluster callers reach the proxy by: its Service's. */ -}}
{{- $listen := default dict (get $config "listen") -}}
{{- $svc := include "ado-auth-proxy.fullname" . -}}
{{- $hosts := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- $_ := set $listen "allowed_hosts" (concat (default list (get $listen "allowed_hosts")) $hosts | uniq) -}}
{{- $_ := set $config "listen" $listen -}}
{{- range $section, $values := $config }}
[{{ $section }}]
{{- range $key, $value := $values }}
{{- if not (kindIs "map" $value) }}
{{ $key }} = {{ include "ado-auth-proxy.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := $values }}
{{- if kindIs "map" $value }}
[{{ $section }}.{{ $key }}]
{{- range $k, $v := $value }}
{{ $k }} = {{ include "ado-auth-proxy.tomlValue" $v }}
{{- end }}
{{- end }}
{{- end }}
{{ end -}}
{{- end -}}
