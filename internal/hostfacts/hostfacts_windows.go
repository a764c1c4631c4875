//go:build windows

package hostfacts

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

// Read returns this machine's facts: power and battery
// (GetSystemPowerStatus), memory (GlobalMemoryStatusEx), uptime
// (GetTickCount64) and the signal of a connected Wi-Fi interface (WLAN
// API). Windows has no load average.
func Read() map[string]float64 {
	facts := map[string]float64{}
	power(facts)
	memory(facts)
	if r, _, _ := procGetTickCount64.Call(); r != 0 {
		facts[UptimeSeconds] = float64(r) / 1000
	}
	wifi(facts)
	return facts
}

var (
	kernel32                 = windows.NewLazySystemDLL("kernel32.dll")
	procGetSystemPowerStatus = kernel32.NewProc("GetSystemPowerStatus")
	procGlobalMemoryStatusEx = kernel32.NewProc("GlobalMemoryStatusEx")
	procGetTickCount64       = kernel32.NewProc("GetTickCount64")

	wlanapi                = windows.NewLazySystemDLL("wlanapi.dll")
	procWlanOpenHandle     = wlanapi.NewProc("WlanOpenHandle")
	procWlanCloseHandle    = wlanapi.NewProc("WlanCloseHandle")
	procWlanEnumInterfaces = wlanapi.NewProc("WlanEnumInterfaces")
	procWlanQueryInterface = wlanapi.NewProc("WlanQueryInterface")
	procWlanFreeMemory     = wlanapi.NewProc("WlanFreeMemory")
)

// systemPowerStatus is SYSTEM_POWER_STATUS.
type systemPowerStatus struct {
	ACLineStatus        byte
	BatteryFlag         byte
	BatteryLifePercent  byte
	SystemStatusFlag    byte
	BatteryLifeTime     uint32
	BatteryFullLifeTime uint32
}

func power(facts map[string]float64) {
	var s systemPowerStatus
	if r, _, _ := procGetSystemPowerStatus.Call(uintptr(unsafe.Pointer(&s))); r == 0 {
		return
	}
	windowsPower(s.ACLineStatus, s.BatteryFlag, s.BatteryLifePercent, facts)
}

// memoryStatusEx is MEMORYSTATUSEX.
type memoryStatusEx struct {
	Length               uint32
	MemoryLoad           uint32
	TotalPhys            uint64
	AvailPhys            uint64
	TotalPageFile        uint64
	AvailPageFile        uint64
	TotalVirtual         uint64
	AvailVirtual         uint64
	AvailExtendedVirtual uint64
}

func memory(facts map[string]float64) {
	m := memoryStatusEx{Length: uint32(unsafe.Sizeof(memoryStatusEx{}))}
	if r, _, _ := procGlobalMemoryStatusEx.Call(uintptr(unsafe.Pointer(&m))); r == 0 || m.TotalPhys == 0 {
		return
	}
	facts[MemAvailBytes] = float64(m.AvailPhys)
	facts[MemUsedPct] = float64(m.TotalPhys-m.AvailPhys) / float64(m.TotalPhys) * 100
}

// WLAN API structures (wlanapi.h), as far as weft reads them.
type wlanInterfaceInfo struct {
	InterfaceGUID windows.GUID
	Description   [256]uint16
	State         uint32
}

type wlanInterfaceInfoList struct {
	NumberOfItems uint32
	Index         uint32
	InterfaceInfo [1]wlanInterfaceInfo // NumberOfItems of them
}

type wlanConnectionAttributes struct {
	State          uint32
	ConnectionMode uint32
	ProfileName    [256]uint16
	// WLAN_ASSOCIATION_ATTRIBUTES
	SSIDLength    uint32
	SSID          [32]byte
	BSSType       uint32
	BSSID         [6]byte
	PhyType       uint32
	PhyIndex      uint32
	SignalQuality uint32 // 0–100
	RxRate        uint32
	TxRate        uint32
}

const (
	wlanStateConnected          = 1
	wlanOpcodeCurrentConnection = 7
)

// wifi reads the signal of the first connected Wi-Fi interface.
func wifi(facts map[string]float64) {
	if procWlanOpenHandle.Find() != nil {
		return // no WLAN service on this edition
	}
	var negotiated uint32
	var h windows.Handle
	if r, _, _ := procWlanOpenHandle.Call(2, 0, uintptr(unsafe.Pointer(&negotiated)), uintptr(unsafe.Pointer(&h))); r != 0 {
		return
	}
	defer procWlanCloseHandle.Call(uintptr(h), 0)
	var list *wlanInterfaceInfoList
	if r, _, _ := procWlanEnumInterfaces.Call(uintptr(h), 0, uintptr(unsafe.Pointer(&list))); r != 0 || list == nil {
		return
	}
	defer procWlanFreeMemory.Call(uintptr(unsafe.Pointer(list)))
	ifaces := unsafe.Slice(&list.InterfaceInfo[0], list.NumberOfItems)
	for i := range ifaces {
		if ifaces[i].State != wlanStateConnected {
			continue
		}
		var size uint32
		var attrs *wlanConnectionAttributes
		r, _, _ := procWlanQueryInterface.Call(uintptr(h), uintptr(unsafe.Pointer(&ifaces[i].InterfaceGUID)),
			wlanOpcodeCurrentConnection, 0, uintptr(unsafe.Pointer(&size)), uintptr(unsafe.Pointer(&attrs)), 0)
		if r != 0 || attrs == nil {
			continue
		}
		q := attrs.SignalQuality
		procWlanFreeMemory.Call(uintptr(unsafe.Pointer(attrs)))
		facts[WiFiQuality] = float64(min(q, 100))
		facts[WiFiSignalDBm] = wlanQualityToDBm(q)
		return
	}
}
